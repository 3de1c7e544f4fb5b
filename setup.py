from setuptools import find_packages, setup

setup(
    name='mmseg-dida',
    version='0.1.0',
    description='DiDA (degradation as a domain bridge) with DAFormer, HRDA and MIC '
    'on MMSegmentation 1.x',
    packages=find_packages(include=['mmseg_dida', 'mmseg_dida.*']),
    python_requires='>=3.11',
    install_requires=[
        'mmengine>=0.10.7,<0.11', 'mmsegmentation==1.2.2', 'numpy', 'timm',
        'opencv-python-headless', 'tqdm'
    ],
    license='Apache License 2.0',
    license_files=['LICENSE'],
)
